"""An independent numpy reference of the moe dialect's semantics.

Written from docs/design.md (not from the C++ lowering), in float64, so that
`moe-run` can be checked against it on random inputs.
"""
