"""What `pipe run` follows: the build, the engines, the epoch end, resuming, interrupts and failures."""
