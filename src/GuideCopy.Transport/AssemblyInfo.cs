namespace GuideCopy.Transport;
