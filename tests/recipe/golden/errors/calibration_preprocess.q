calibration {
  preprocess { layout NCWH, resize 224x224 }
}
pipeline { fold-constants }
