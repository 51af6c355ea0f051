let samples 256
