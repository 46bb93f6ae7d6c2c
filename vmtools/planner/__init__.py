"""Planning: constraints, the MILP models (build only), solving, ordering, the replay checker."""
