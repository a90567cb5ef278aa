"""C emission: the generated model source, header, weights and build files."""
