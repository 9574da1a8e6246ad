"""The demo and the chaos run: they drive the product from outside, through the stand-ins."""
