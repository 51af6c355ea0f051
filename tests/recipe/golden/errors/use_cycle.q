pipeline a {
  fold-constants
  use b
}
pipeline b {
  use a
}
pipeline { use a }
