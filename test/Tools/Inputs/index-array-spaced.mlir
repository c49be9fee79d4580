// The lexer skips whitespace and comments between the tokens of array<index>.
func.func @f() attributes {a = array
  // between the keyword and its bracket
  < index : 1>} {
  return
}
