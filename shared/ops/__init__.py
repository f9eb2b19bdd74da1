"""Operations: the tiercdn umbrella CLI and the process topology it starts."""
