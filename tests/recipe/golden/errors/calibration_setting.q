calibration {
  samples 10
  sede 3
}
pipeline { fold-constants }
