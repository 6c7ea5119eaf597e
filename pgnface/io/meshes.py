"""Reading and writing triangle meshes: OBJ, PLY (ASCII and binary) and NPZ.

``read_mesh(path) -> (vertices [N, 3] float64, triangles [T, 3] int64)``;
polygons with more than three corners are fanned into triangles. Writers
take optional per-vertex RGB colours in [0, 1] (OBJ as ``v x y z r g b``,
PLY as uchar red/green/blue).
"""

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

PLY_TYPES = {
    "char": "i1",
    "uchar": "u1",
    "short": "i2",
    "ushort": "u2",
    "int": "i4",
    "uint": "u4",
    "float": "f4",
    "double": "f8",
    "int8": "i1",
    "uint8": "u1",
    "int16": "i2",
    "uint16": "u2",
    "int32": "i4",
    "uint32": "u4",
    "float32": "f4",
    "float64": "f8",
}


def _fan(polygon):
    return [(polygon[0], polygon[k], polygon[k + 1]) for k in range(1, len(polygon) - 1)]


def read_mesh(path) -> Tuple[np.ndarray, np.ndarray]:
    """Reads an .obj, .ply or .npz mesh.

    Args:
        path: the mesh file.

    Returns:
        (vertices [N, 3] float64, triangles [T, 3] int64); polygons are fanned into triangles.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unsupported suffix or malformed content (naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".obj":
            return _read_obj(path)
        if suffix == ".ply":
            return _read_ply(path)
        if suffix == ".npz":
            return _read_npz(path)
    except (ValueError, IndexError, KeyError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: malformed {suffix[1:].upper()} mesh ({err})") from err
    raise ValueError(f"{path}: unsupported mesh type {suffix!r}; expected .obj, .ply or .npz")


def _read_obj(path):
    verts, faces = [], []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "v":
                verts.append([float(v) for v in parts[1:4]])
            elif parts[0] == "f":
                idx = [int(p.split("/")[0]) for p in parts[1:]]
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]  # 1-based or relative
                faces += _fan(idx)
    if not verts:
        raise ValueError("no vertices")
    return np.asarray(verts, np.float64), np.asarray(faces, np.int64).reshape(-1, 3)


def _read_ply(path):
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError("not a PLY file (no 'ply' magic)")
        fmt, elements = None, []
        while True:
            line = f.readline()
            if not line:
                raise ValueError("header without end_header")
            words = line.decode("ascii").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append([words[1], int(words[2]), []])
            elif words[0] == "property":
                elements[-1][2].append(words[1:])
            elif words[0] == "end_header":
                break
        body = f.read()
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"unknown PLY format {fmt!r}")
    verts, faces = None, []
    if fmt == "ascii":
        tokens = body.split()
        pos = 0
        for name, count, props in elements:
            for _ in range(count):
                row = []
                for prop in props:
                    if prop[0] == "list":
                        n = int(tokens[pos])
                        row.append([float(t) for t in tokens[pos + 1 : pos + 1 + n]])
                        pos += 1 + n
                    else:
                        row.append(float(tokens[pos]))
                        pos += 1
                if name == "vertex":
                    verts = [] if verts is None else verts
                    names = [p[-1] for p in props]
                    verts.append([row[names.index(c)] for c in "xyz"])
                elif name == "face":
                    faces += _fan([int(v) for v in row[0]])
    else:
        endian = "<" if fmt == "binary_little_endian" else ">"
        offset = 0
        for name, count, props in elements:
            if all(p[0] != "list" for p in props):
                dtype = np.dtype([(p[1], endian + PLY_TYPES[p[0]]) for p in props])
                data = np.frombuffer(body, dtype, count, offset)
                offset += dtype.itemsize * count
                if name == "vertex":
                    verts = np.stack([data[c].astype(np.float64) for c in "xyz"], 1)
            else:
                for _ in range(count):
                    for prop in props:
                        if prop[0] == "list":
                            cdt, idt = np.dtype(endian + PLY_TYPES[prop[1]]), np.dtype(endian + PLY_TYPES[prop[2]])
                            n = int(np.frombuffer(body, cdt, 1, offset)[0])
                            offset += cdt.itemsize
                            idx = np.frombuffer(body, idt, n, offset)
                            offset += idt.itemsize * n
                            if name == "face":
                                faces += _fan([int(i) for i in idx])
                        else:
                            offset += np.dtype(PLY_TYPES[prop[0]]).itemsize
    if verts is None or len(verts) == 0:
        raise ValueError("no vertex element")
    return np.asarray(verts, np.float64), np.asarray(faces, np.int64).reshape(-1, 3)


def _read_npz(path):
    with np.load(path) as data:
        for vkey in ("vertices", "verts", "mean", "noneck_mean"):
            if vkey in data:
                verts = np.asarray(data[vkey], np.float64).reshape(-1, 3)
                break
        else:
            raise ValueError(f"no vertices array (vertices/verts/mean); found {', '.join(data.files)}")
        tkey = next((k for k in ("triangles", "faces", "tris", "noneck_triangles") if k in data), None)
        tris = np.asarray(data[tkey], np.int64) if tkey else np.zeros((0, 3), np.int64)
    return verts, tris


def write_obj(path, vertices: np.ndarray, triangles: np.ndarray, colours: Optional[np.ndarray] = None) -> None:
    """Writes an OBJ (1-based faces; ``v x y z r g b`` when colours are given).

    Args:
        path: the file to write.
        vertices: [N, 3] positions, written with 6 decimals.
        triangles: [T, 3] 0-based vertex indices (the file's are 1-based).
        colours: optional [N, 3] RGB in [0, 1], 4 decimals after each vertex.
    """
    vertices = np.asarray(vertices, np.float64)
    with open(path, "w") as f:
        f.write("# written by pgnface\n")
        if colours is None:
            np.savetxt(f, vertices, fmt="v %.6f %.6f %.6f")
        else:
            np.savetxt(f, np.c_[vertices, np.clip(colours, 0, 1)], fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
        np.savetxt(f, np.asarray(triangles, np.int64) + 1, fmt="f %d %d %d")


def write_ply(path, vertices: np.ndarray, triangles: np.ndarray, colours: Optional[np.ndarray] = None) -> None:
    """Writes a binary little-endian PLY (float xyz, optional uchar rgb, int face lists).

    Args:
        path: the file to write.
        vertices: [N, 3] positions, stored as float32.
        triangles: [T, 3] vertex indices, stored as int32 lists of 3.
        colours: optional [N, 3] RGB in [0, 1], stored as uchar (rounded x 255).
    """
    vertices = np.asarray(vertices, np.float32)
    triangles = np.asarray(triangles, np.int32)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment written by pgnface",
        f"element vertex {len(vertices)}",
        "property float x",
        "property float y",
        "property float z",
    ]
    if colours is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {len(triangles)}", "property list uchar int vertex_indices", "end_header"]
    vdata = np.empty(len(vertices), dtype=fields)
    for k, c in enumerate("xyz"):
        vdata[c] = vertices[:, k]
    if colours is not None:
        rgb = (np.clip(colours, 0, 1) * 255 + 0.5).astype(np.uint8)
        vdata["red"], vdata["green"], vdata["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    fdata = np.empty(len(triangles), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    fdata["n"], fdata["i"] = 3, triangles
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(vdata.tobytes())
        f.write(fdata.tobytes())
