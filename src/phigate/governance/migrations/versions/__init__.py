"""One module per schema revision; never edit a revision that has shipped, add a new one."""
