"""`python -m tunewise ...`, and so `accelerate launch -m tunewise run ...` for multi-process training."""

from tunewise.cli import main

main()
