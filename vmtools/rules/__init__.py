"""What both vm-plan and vm-apply obey, with no solver in sight: the rules of a
``vmtools.constraints`` document (:mod:`.constraints`), host capacity as both count it
(:mod:`.capacity`), and the replay checker that validates a plan independently of the
planner that made it (:mod:`.check`)."""
