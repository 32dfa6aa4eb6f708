namespace GuideCopy.Lab;
