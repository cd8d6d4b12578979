"""Triton kernels, each beside its torch reference: `nt_xent` (the fused contrastive loss).

Nothing is imported here: Triton is optional and slow to import, so `course_lib.contrastive.losses` imports
`course_lib.kernels.nt_xent` only when the fused path is asked for, and that module imports the
kernels (`nt_xent_triton`) only when they run. To run a kernel on the CPU, in Triton's interpreter,
set TRITON_INTERPRET=1 in the environment before triton is imported.
"""
