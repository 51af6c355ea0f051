"""qcc's pass library (installed as ``qcc.passes``): one pass per module.

Each module registers its pass with :func:`qcc.pipeline.register_pass`; importing this package
does not import the modules, :func:`qcc.pipeline.load_builtin_passes` does.
"""
