"""What both vm-plan and vm-apply obey, with no solver in sight: the rules of a
``vmtools.constraints`` document (:mod:`.constraints`; a rule and the primitives every kind
comes to in :mod:`.primitives`, each kind in :mod:`.kinds`), host capacity as both count it
(:mod:`.capacity`), and the replay checker that validates a plan independently of the
planner that made it (:mod:`.check`; a plan's actions as a partial order in
:mod:`.precedence`, power actions in :mod:`.power_check`)."""
