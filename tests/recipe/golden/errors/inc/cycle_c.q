include "cycle_b.q"
