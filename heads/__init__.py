"""Built-in heads, each a pluggy plugin module registered through the ``rskp_plugin`` entry-point group."""
