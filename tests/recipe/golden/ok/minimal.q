pipeline { fold-constants }
