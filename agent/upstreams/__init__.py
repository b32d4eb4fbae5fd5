"""The model servers powergate sends work to, and how it chooses among them."""
