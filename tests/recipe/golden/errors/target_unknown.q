pipeline { fold-constants }
target tflte
