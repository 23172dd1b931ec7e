"""Human labels: the four feedback shapes' conversion into the labels table (``convert``) and label
quality (``agreement``). Pure functions; the labelers in ``tasks/labelers/`` do the I/O."""
