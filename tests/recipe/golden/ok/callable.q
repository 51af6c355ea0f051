calibration { data "mypkg.data:load"; samples 16 }
pipeline { fold-constants }
