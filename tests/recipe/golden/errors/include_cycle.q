include "inc/cycle_b.q"
pipeline { fold-constants }
