"""Classical road extraction: features, MJCR, graph cut, tensor voting, NMS, skeletons, networks and their connection."""
