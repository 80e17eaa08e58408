"""One module per venue: ``rule_for(symbol)`` returns its book sequencing rule."""
