"""The recipe language (``recipe.q``): grammar, located AST, resolution and diagnostics."""
