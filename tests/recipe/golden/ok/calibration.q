recipe calib_demo

calibration {
  data "data/*.npy"
  preprocess { resize 224x224, layout NCHW, scale 1/255, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225] }
  samples 64
  batch 8
  seed 3
}

pipeline { fold-constants }

target onnx { format = qdq, opset = 13 }
