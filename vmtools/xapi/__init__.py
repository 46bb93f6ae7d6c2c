"""XCP-ng / XenServer pools through XAPI: the snapshot source (:mod:`vmtools.xapi.source`)
and the parser of XAPI's RRD export (:mod:`vmtools.xapi.rrd`). The XAPI client itself (session,
TLS, credentials) is :mod:`vmtools.drivers.xapi_pool`, shared with the ``xapi`` transport."""
