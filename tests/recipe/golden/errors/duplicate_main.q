pipeline { fold-constants }
pipeline { eliminate-dead-code }
