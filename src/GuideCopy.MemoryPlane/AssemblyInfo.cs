namespace GuideCopy.MemoryPlane;
