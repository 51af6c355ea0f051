# a library file: named pipelines only
pipeline tidy {
  eliminate-identity
  eliminate-dead-code
}
