"""Benches, simulators and the demo: what measures or exercises the product from outside, never
what it runs. They start the service as a process, replay and load it, simulate shoppers, sweep
settings and tell the closed loop's story; the bento ships none of them."""
