"""Everything that knows clusters, YAML and command lines; the method lives in `mst`."""
