"""The AI feature: model menu, runs in workers, the results dock and the layers it draws."""
