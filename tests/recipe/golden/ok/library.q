# a file meant to be included: no main pipeline is fine
pipeline first { fold-constants }
pipeline second {
  use first
  eliminate-dead-code
}
