"""Tools around the course, not part of the simulated machine: the command line's helpers.

==================  ==================================================================
module              what it does
==================  ==================================================================
``compare``         ``python -m kernel_sim compare``: one workload under several techniques
``generate``        write (or ``--check``) the generated files: ``guests/abi.s``, the ISA reference
``isa_reference``   the learner's ISA and ABI reference, generated from the tables
``lab``             ``python -m kernel_sim lab``: open the course in JupyterLab
``warm``            compile every jitted entry point once (``warmup``, Binder's postBuild)
==================  ==================================================================

Nothing in the engine, the monitors or the lessons imports a tool.
"""
