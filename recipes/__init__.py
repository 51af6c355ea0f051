"""Built-in recipes shipped with qcc (``qcc compile MODEL -r NAME``)."""
