global using NUnit.Framework;
global using GuideCopy.MemoryPlane;
