pipeline {
  fold-constants
