let x = @3
