"""vm-web: the cluster in a browser, and the manual actions through vm-plan's checker and
vm-apply's executor (:mod:`vmtools.web.app`; safety in :mod:`vmtools.web.auth`)."""
