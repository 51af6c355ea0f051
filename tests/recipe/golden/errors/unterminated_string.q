let path = "calib/*.npy
pipeline { fold-constants }
