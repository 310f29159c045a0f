"""Network helpers at the edge: TLS contexts, reverse DNS, the PROXY protocol."""
