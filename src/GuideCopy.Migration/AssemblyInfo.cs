namespace GuideCopy.Migration;
