include "inc/nowhere.q"
pipeline { fold-constants }
