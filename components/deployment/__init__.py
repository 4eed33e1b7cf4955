"""From a registered candidate to what the shop is served: the gate that decides a promotion,
and the bento of the production version."""
