pipeline { fold-constants }
target tflite { io = int8 }
