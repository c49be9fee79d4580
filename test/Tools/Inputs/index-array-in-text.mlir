// array<index: 1> in a comment or a string is not an attribute.
!idx = index
func.func @f() attributes {s = "array<index: 1>", a = array<i64: 1, 2>} {
  return
}
