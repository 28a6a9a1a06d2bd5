"""Operations on dead letters: decode, archive, watch, redrive and purge."""
