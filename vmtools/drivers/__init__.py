"""Migration transports: xend HTTP, xend XML-RPC, xm/xl over SSH. Only here imports paramiko."""
