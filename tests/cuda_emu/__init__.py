"""The CPU emulator of the CUDA execution model (see docs/cuda_emulation.md)."""
