"""Reading and writing: images, video frames, meshes, face crops and boxes, face detection, overlays."""
