include "cycle_c.q"
